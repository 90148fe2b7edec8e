/* usage: bench_threads [N]   (default 10000)
 * Creates and joins N threads, one at a time (each does nothing), then prints
 * "elapsed_us=E utime_us=U stime_us=S" (its own loop time and getrusage
 * RUSAGE_SELF) so a benchmark can tell the traced program's CPU time from its
 * supervisor's. Used by benches/capture.py (tracing cost of thread creation:
 * a clone event stop, the new thread's first stop and its exit). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static void *nothing(void *arg) { return arg; }

static long us(struct timeval tv) { return tv.tv_sec * 1000000L + tv.tv_usec; }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, nothing, NULL) != 0) return 3;
        if (pthread_join(t, NULL) != 0) return 4;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long e = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
    printf("elapsed_us=%ld utime_us=%ld stime_us=%ld\n", e, us(ru.ru_utime), us(ru.ru_stime));
    return 0;
}
