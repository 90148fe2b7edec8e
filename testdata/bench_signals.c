/* usage: bench_signals [N] [usr1|segv]   (default 100000 usr1)
 * usr1: installs a SIGUSR1 handler and raise()s SIGUSR1 N times.
 * segv: installs a SIGSEGV handler and faults N times on a load from address
 *       0; the handler moves the program counter past the faulting
 *       instruction, as the JVM's implicit null checks and Go's nil checks
 *       recover from their faults (a fault anywhere else is made fatal).
 * Checks the handler ran N times, then prints "elapsed_us=E utime_us=U
 * stime_us=S" (loop time, getrusage RUSAGE_SELF). Used by the benchmarks:
 * under ptrace every delivered signal is a signal-delivery-stop the tracer
 * must resume. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <ucontext.h>

static volatile sig_atomic_t seen;

static void on_usr1(int sig) { (void)sig; seen++; }

/* The faulting load and the instruction after it, as global labels. */
extern const char fault_at[], fault_resume[];
__attribute__((noinline)) static void fault_once(void) {
    __asm__ volatile("xorl %%eax, %%eax\n"
                     ".globl fault_at\nfault_at:\n"
                     "movl (%%rax), %%eax\n"
                     ".globl fault_resume\nfault_resume:\n"
                     ::: "rax", "memory");
}

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    (void)info;
    ucontext_t *uc = ctx;
    if (uc->uc_mcontext.gregs[REG_RIP] != (greg_t)fault_at) {
        signal(sig, SIG_DFL); /* a real crash: let it refault and die */
        return;
    }
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)fault_resume;
    seen++;
}

static long us(struct timeval tv) { return tv.tv_sec * 1000000L + tv.tv_usec; }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int segv = argc > 2 && strcmp(argv[2], "segv") == 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (segv) {
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
    } else {
        sa.sa_handler = on_usr1;
    }
    if (sigaction(segv ? SIGSEGV : SIGUSR1, &sa, NULL) != 0) return 3;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        if (segv) fault_once();
        else raise(SIGUSR1);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (seen != (sig_atomic_t)n) {
        fprintf(stderr, "handler ran %ld times, expected %ld\n", (long)seen, n);
        return 5;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long e = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
    printf("elapsed_us=%ld utime_us=%ld stime_us=%ld\n", e, us(ru.ru_utime), us(ru.ru_stime));
    return 0;
}
