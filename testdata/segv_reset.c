/* usage: segv_reset return|oneshot|other-thread
 * Handles SIGSEGV and recovers from 100 faults at 0x40 (the handler moves
 * the program counter past the faulting load), then gives up on the next
 * fault, as Rust's and the JVM's handlers do with a fault they do not own:
 *   return:       the handler sets SIGSEGV back to SIG_DFL and returns;
 *   oneshot:      the handler was installed with SA_RESETHAND, so the
 *                 kernel reset it when the signal was delivered; it returns;
 *   other-thread: another thread sets SIG_DFL (dispositions belong to the
 *                 whole process), then main faults again.
 * Either way the load runs again, faults again, and this time the default
 * action kills the process with SIGSEGV. Prints "handled=N" (write(2),
 * before the fatal fault) and the main thread's id as "tid=T". */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#define RECOVERED 100

static volatile sig_atomic_t handled;
static volatile sig_atomic_t give_up;
static int reset_in_handler;

extern const char load_at[], load_resume[];
__attribute__((noinline)) static void load_from_0x40(void) {
    __asm__ volatile("movl $0x40, %%eax\n"
                     ".globl load_at\nload_at:\n"
                     "movl (%%rax), %%eax\n"
                     ".globl load_resume\nload_resume:\n"
                     ::: "rax", "memory");
}

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    ucontext_t *uc = ctx;
    handled++;
    if (give_up || uc->uc_mcontext.gregs[REG_RIP] != (greg_t)load_at || info->si_addr != (void *)0x40) {
        if (reset_in_handler) signal(sig, SIG_DFL);
        return; /* the load runs again */
    }
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)load_resume;
}

static void *reset_to_default(void *arg) {
    (void)arg;
    signal(SIGSEGV, SIG_DFL);
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "return";
    int oneshot = strcmp(mode, "oneshot") == 0;
    int other_thread = strcmp(mode, "other-thread") == 0;
    if (!oneshot && !other_thread && strcmp(mode, "return") != 0) {
        fprintf(stderr, "usage: segv_reset return|oneshot|other-thread\n");
        return 64;
    }
    reset_in_handler = !oneshot && !other_thread;
    printf("tid=%d\n", gettid());
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    for (int i = 0; i < RECOVERED; i++) load_from_0x40();
    if (oneshot) {
        sa.sa_flags |= SA_RESETHAND;
        sigaction(SIGSEGV, &sa, NULL);
    }
    if (other_thread) {
        pthread_t t;
        pthread_create(&t, NULL, reset_to_default, NULL);
        pthread_join(t, NULL);
    }
    give_up = 1;
    char line[32];
    int n = snprintf(line, sizeof line, "handled=%d\n", (int)handled);
    write(1, line, n);
    load_from_0x40();
    return 0; /* not reached */
}
