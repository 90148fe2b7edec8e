/* Signals that must pass through the tracer untouched:
 * - SIGUSR1 raised, handled;
 * - a real-time signal queued with a payload (sigqueue), handled with its value;
 * - SIGABRT and SIGTRAP with handlers (crash signals, but handled);
 * - a group-stop: a helper process waits until we are stopped, sends SIGCONT.
 * Exits 0 and prints "ok ..." only if every handler saw what it should. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, rt_value, abrt, trap;

static void on_usr1(int sig) { (void)sig; usr1++; }
static void on_abrt(int sig) { (void)sig; abrt++; }
static void on_trap(int sig) { (void)sig; trap++; }
static void on_rt(int sig, siginfo_t *info, void *uctx) {
    (void)sig; (void)uctx;
    if (info->si_code == SI_QUEUE) rt_value = info->si_value.sival_int;
}

static char state_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p ? p[2] : '?';
}

int main(void) {
    signal(SIGUSR1, on_usr1);
    signal(SIGABRT, on_abrt);
    signal(SIGTRAP, on_trap);
    struct sigaction sa = { 0 };
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN + 2, &sa, NULL);

    raise(SIGUSR1);
    union sigval v = { .sival_int = 1234 };
    sigqueue(getpid(), SIGRTMIN + 2, v);
    raise(SIGABRT);
    __asm__ volatile("int3");

    /* Group-stop: stop ourselves; a helper continues us once we are stopped
     * ('T', or 't' while the tracer holds us in PTRACE_LISTEN). */
    pid_t me = getpid();
    pid_t helper = fork();
    if (helper == 0) {
        struct timespec tick = { 0, 1000 * 1000 };
        for (int i = 0; i < 5000; i++) {
            char s = state_of(me);
            if (s == 'T' || s == 't') { kill(me, SIGCONT); _exit(0); }
            nanosleep(&tick, NULL);
        }
        _exit(1);
    }
    raise(SIGSTOP);
    int status = 0;
    waitpid(helper, &status, 0);
    int resumed = WIFEXITED(status) && WEXITSTATUS(status) == 0;

    printf("ok usr1=%d rt=%d abrt=%d trap=%d resumed=%d\n", (int)usr1, (int)rt_value, (int)abrt,
           (int)trap, resumed);
    return (usr1 == 1 && rt_value == 1234 && abrt == 1 && trap == 1 && resumed) ? 0 : 1;
}
