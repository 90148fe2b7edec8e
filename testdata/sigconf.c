/* tini's sigconf test program (krallin/tini test/sigconf), extended: leaves
 * a signal state for the program it execs to inherit, through the
 * supervisor under test. Ignores SIGTTOU (tini and crashwatch ignore it for
 * themselves), SIGSEGV (a fault signal), SIGINT (forwarded), SIGHUP (what
 * nohup does) and SIGPIPE (the Rust runtime ignores it for itself); blocks
 * SIGTTIN, SIGILL, SIGTERM and SIGRTMIN+3.
 *
 * Usage: sigconf PROGRAM [ARGS…] */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    (void)argc;
    int ignored[] = { SIGTTOU, SIGSEGV, SIGINT, SIGHUP, SIGPIPE };
    for (unsigned i = 0; i < sizeof ignored / sizeof *ignored; i++) signal(ignored[i], SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTTIN);
    sigaddset(&set, SIGILL);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGRTMIN + 3);
    sigprocmask(SIG_BLOCK, &set, NULL);
    execvp(argv[1], argv + 1);
    perror("execvp");
    return 127;
}
