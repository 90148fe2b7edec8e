/* tini's reaping test: leaves N orphans to the supervisor it runs under
 * (crashwatch or tini as PID 1 or a subreaper) and checks they are reaped.
 *
 * An intermediate process forks N children and exits. With `hold`, the
 * children block until the intermediate is gone, so all N are orphans
 * re-parented to the supervisor (checked: their parent becomes ours), then
 * are released and exit at once. With `storm`, they exit as soon as they
 * are born, racing the intermediate's own exit: orphans and zombies of a
 * dying parent, in a burst. Either way, every one of the N must then be
 * reaped: not even a zombie left. Exits 0 and prints "reaped N" when all
 * were; 2 if one went to another parent; 3 if one was left (its state is
 * printed). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int parent_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    int ppid = -1;
    if (!p || sscanf(p + 2, "%*c %d", &ppid) != 1) return -1;
    return ppid;
}

static char state_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return '-';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p ? p[2] : '?';
}

/* Waits (1 ms ticks, 60 s at most) until cond(pid, arg) holds for every pid. */
static int wait_all(pid_t *pids, int n, int (*cond)(pid_t, int), int arg) {
    struct timespec tick = { 0, 1000 * 1000 };
    for (int t = 0; t < 60000; t++) {
        int all = 1;
        for (int i = 0; i < n && all; i++) all = cond(pids[i], arg);
        if (all) return 1;
        nanosleep(&tick, NULL);
    }
    return 0;
}

static int reparented_to(pid_t pid, int parent) { return parent_of(pid) == parent; }
/* kill(pid, 0) succeeds for a zombie: gone means reaped. */
static int reaped(pid_t pid, int unused) { (void)unused; return kill(pid, 0) == -1 && errno == ESRCH; }

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    int hold = argc > 2 && strcmp(argv[2], "hold") == 0;
    pid_t *pids = calloc(n, sizeof *pids);
    int release[2], report[2];
    if (!pids || pipe(release) || pipe(report)) return 1;
    pid_t intermediate = fork();
    if (intermediate == 0) {
        close(report[0]);
        for (int i = 0; i < n; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                char byte;
                close(release[1]);
                if (hold) while (read(release[0], &byte, 1) == -1 && errno == EINTR) {}
                _exit(0);
            }
            if (pid < 0) _exit(1);
            if (write(report[1], &pid, sizeof pid) != sizeof pid) _exit(1);
        }
        _exit(0);
    }
    close(report[1]);
    close(release[0]);
    for (int got = 0; got < n;) {
        ssize_t r = read(report[0], pids + got, (n - got) * sizeof *pids);
        if (r <= 0) { fprintf(stderr, "the intermediate reported %d of %d pids\n", got, n); return 1; }
        got += r / sizeof *pids;
    }
    int status;
    waitpid(intermediate, &status, 0);
    if (hold) {
        if (!wait_all(pids, n, reparented_to, getppid())) {
            for (int i = 0; i < n; i++)
                if (parent_of(pids[i]) != getppid())
                    printf("orphan %d went to %d, not %d\n", pids[i], parent_of(pids[i]), getppid());
            return 2;
        }
        printf("%d orphans re-parented to the supervisor\n", n);
    }
    close(release[1]);
    if (!wait_all(pids, n, reaped, 0)) {
        for (int i = 0; i < n; i++)
            if (!reaped(pids[i], 0)) printf("not reaped: %d in state %c\n", pids[i], state_of(pids[i]));
        return 3;
    }
    printf("reaped %d\n", n);
    return 0;
}
