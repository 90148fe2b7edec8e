/* Handles SIGSEGV and recovers (like the JVM or Go runtime would): the
 * faults must pass through untouched and the program exits 0. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>

static sigjmp_buf recover_point;
static volatile sig_atomic_t handled;

static void on_segv(int sig, siginfo_t *info, void *uctx) {
    (void)sig; (void)uctx;
    if (info->si_addr == (void *)0x40) handled++;
    siglongjmp(recover_point, 1);
}

int main(void) {
    struct sigaction sa = { 0 };
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    for (int i = 0; i < 3; i++) {
        if (sigsetjmp(recover_point, 1) == 0) *(volatile int *)0x40 = 1;
    }
    printf("recovered=%d\n", (int)handled);
    return handled == 3 ? 0 : 1;
}
