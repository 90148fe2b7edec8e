#define _GNU_SOURCE
/* usage: pending_signal usr1|rt|term FIFO
 * Two threads stopped at once: a second thread in a signal-delivery-stop for
 * SIGUSR1 (handled), SIGRTMIN+3 (handled, queued with a value) or SIGTERM
 * (default action: it would end the process), the main thread in its
 * SIGSEGV stop. Both block until
 * the test, which has stopped reaping, writes a byte to FIFO, so both stops
 * are queued in the kernel when the tracer looks. (waitpid reports the
 * leader first, so the crash is on the main thread.)
 * Prints "signal_tid=N" and "main_tid=M". */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static int go_fd[2];
static int use_rt, use_term;

static void on_signal(int sig) { (void)sig; }

static void *signaller(void *arg) {
    (void)arg;
    printf("signal_tid=%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    char b;
    if (read(go_fd[0], &b, 1) != 1) return NULL;
    if (use_term) {
        raise(SIGTERM); /* under ptrace, not fatal at send time */
    } else if (use_rt) {
        /* thread-directed with SI_QUEUE siginfo and a payload */
        union sigval v = { .sival_int = 77 };
        pthread_sigqueue(pthread_self(), SIGRTMIN + 3, v);
    } else {
        raise(SIGUSR1); /* thread-directed (tgkill, SI_TKILL) */
    }
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    use_rt = argc > 1 && argv[1][0] == 'r';
    use_term = argc > 1 && argv[1][0] == 't';
    signal(SIGUSR1, on_signal);
    signal(SIGRTMIN + 3, on_signal);
    if (pipe(go_fd) != 0) return 2;
    printf("main_tid=%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    pthread_t t;
    pthread_create(&t, NULL, signaller, NULL);
    char b;
    /* O_RDWR: opening a FIFO so never blocks; the read below does. */
    int go = argc > 2 ? open(argv[2], O_RDWR) : 0;
    if (go < 0 || read(go, &b, 1) != 1) return 3; /* the test says go */
    if (write(go_fd[1], "g", 1) != 1) return 4;
    *(volatile int *)0 = 1;
    return 0;
}
