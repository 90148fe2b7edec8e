/* usage: segv_masked ignore|block
 * A fault whose signal is ignored or blocked: the kernel resets the handler
 * to SIG_DFL (and unblocks it) when it forces the signal, so the fault is
 * fatal and must be captured even though SIGSEGV looked "ignored" before. */
#include <signal.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "ignore") == 0) {
        signal(SIGSEGV, SIG_IGN);
    } else {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGSEGV);
        sigprocmask(SIG_BLOCK, &set, NULL);
    }
    *(volatile int *)0x100 = 1;
    return 0;
}
