/* The child of tini's signals test, for every signal: exits with 100+N
 * when it receives signal N, so the exit status says which signal arrived
 * (through crashwatch or tini, which both return the child's code).
 *
 * Usage: sigexit [N…]  — signals N… keep their default action (SIGTSTP for
 * the stop/continue test). Prints "ready" once every handler is installed,
 * then waits for signals. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_signal(int sig) { _exit(100 + sig); }

int main(int argc, char **argv) {
    for (int sig = 1; sig <= SIGRTMAX; sig++) {
        int keep = 0;
        for (int i = 1; i < argc; i++) keep |= atoi(argv[i]) == sig;
        if (keep || sig == SIGKILL || sig == SIGSTOP || (sig > 31 && sig < SIGRTMIN)) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        if (sigaction(sig, &sa, NULL) != 0) {
            perror("sigaction");
            return 1;
        }
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
