/* usage: many_threads EXTRA_THREADS HEAP_MB
 * Starts EXTRA_THREADS threads that block, touches HEAP_MB of heap, waits
 * until every thread runs, then the main thread crashes (null write).
 * Prints "crash_tid=N". Used for the 50-thread test and the benchmark. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_barrier_t all_started;

static void *idle(void *arg) {
    (void)arg;
    pthread_barrier_wait(&all_started);
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    int extra = argc > 1 ? atoi(argv[1]) : 0;
    long heap_mb = argc > 2 ? atol(argv[2]) : 0;
    char *heap = NULL;
    if (heap_mb > 0) {
        heap = malloc((size_t)heap_mb << 20);
        if (!heap) return 2;
        memset(heap, 0x5a, (size_t)heap_mb << 20);
    }
    pthread_barrier_init(&all_started, NULL, (unsigned)extra + 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (int i = 0; i < extra; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, idle, NULL) != 0) return 3;
    }
    pthread_barrier_wait(&all_started);
    printf("crash_tid=%ld heap=%p\n", (long)syscall(SYS_gettid), (void *)heap);
    fflush(stdout);
    *(volatile int *)0 = heap ? heap[12345] : 0;
    return 0;
}
