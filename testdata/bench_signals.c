/* usage: bench_signals [N]   (default 100000)
 * Installs a SIGUSR1 handler and raise()s SIGUSR1 N times; checks the handler
 * ran N times, then prints "elapsed_us=E utime_us=U stime_us=S" (loop time,
 * getrusage RUSAGE_SELF). Used by benches/capture.py: under ptrace every
 * delivered signal is a signal-delivery-stop the tracer must resume. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static volatile sig_atomic_t seen;

static void on_usr1(int sig) { (void)sig; seen++; }

static long us(struct timeval tv) { return tv.tv_sec * 1000000L + tv.tv_usec; }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) return 3;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) raise(SIGUSR1);
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
