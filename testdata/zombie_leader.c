/* The main thread calls pthread_exit (it becomes a zombie that stays listed
 * in /proc/PID/task); another thread then crashes. Prints "crash_tid=N". */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pid_t leader;

static int leader_is_zombie(void) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)leader);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *close_paren = strrchr(buf, ')');
    return close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

static void *crasher(void *arg) {
    (void)arg;
    struct timespec tick = { 0, 1000 * 1000 };
    for (int i = 0; i < 5000 && !leader_is_zombie(); i++) nanosleep(&tick, NULL);
    printf("crash_tid=%ld leader_zombie=%d\n", (long)syscall(SYS_gettid), leader_is_zombie());
    fflush(stdout);
    *(volatile int *)0 = 1;
    return NULL;
}

int main(void) {
    leader = getpid();
    pthread_t t;
    pthread_create(&t, NULL, crasher, NULL);
    pthread_exit(NULL);
}
