/* grow — a program whose memory the test drives, one command per line on
 * stdin, for --oom-snapshot:
 *
 *   up N [P]      grow to N MiB: 1 MiB blocks mmap'd and filled, in
 *                 grow_to(); with P, stop at P MiB, print "paused at P MiB"
 *                 and wait there for a line on stdin before going on
 *   down N        shrink to N MiB (munmap, so the memory really goes back)
 *   check         verify every block still holds what was written into it
 *   urg           print how many SIGURG it received ("sigurg=N")
 *   threads N     start N threads that wait forever
 *   churn         start a thread that creates and joins threads without end
 *   crash-thread  crash (SIGSEGV) in a thread started for it
 *
 * Each command answers with one line ("at N MiB", "verified N MiB"…),
 * written with write(2) so nothing waits in a buffer. EOF ends it: exit 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MIB (1L << 20)
#define MAX_BLOCKS 4096

static char *blocks[MAX_BLOCKS];
static long count;
static volatile sig_atomic_t urgs;

static void say(const char *fmt, long n) {
    char line[128];
    int len = snprintf(line, sizeof line, fmt, n);
    if (write(1, line, (size_t)len) != len) exit(4);
}

static void on_urg(int sig) {
    (void)sig;
    urgs++;
}

static void wait_line(void) {
    char line[64];
    if (!fgets(line, sizeof line, stdin)) exit(0);
}

/* Every byte of block i is (i * 7 + offset / 4096) & 0xff: a page moved or
 * lost shows. */
static void fill(char *block, long i) {
    for (long off = 0; off < MIB; off += 4096) memset(block + off, (int)((i * 7 + off / 4096) & 0xff), 4096);
}

static int intact(const char *block, long i) {
    for (long off = 0; off < MIB; off++)
        if ((unsigned char)block[off] != (unsigned char)((i * 7 + off / 4096) & 0xff)) return 0;
    return 1;
}

static void grow_to(long target, long pause_at) {
    while (count < target && count < MAX_BLOCKS) {
        char *block = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (block == MAP_FAILED) exit(3);
        fill(block, count);
        blocks[count++] = block;
        if (count == pause_at) {
            say("paused at %ld MiB\n", count);
            wait_line();
        }
    }
}

static void *wait_forever(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

static void *nothing(void *arg) {
    return arg;
}

static void *churn(void *arg) {
    (void)arg;
    for (;;) {
        pthread_t t;
        if (pthread_create(&t, NULL, nothing, NULL) == 0) pthread_join(t, NULL);
    }
    return NULL;
}

static void *crash(void *arg) {
    (void)arg;
    *(volatile int *)16 = 1;
    return NULL;
}

int main(void) {
    signal(SIGURG, on_urg);
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        long n = 0, p = 0;
        if (sscanf(line, "up %ld %ld", &n, &p) >= 1) {
            grow_to(n, p);
            say("at %ld MiB\n", count);
        } else if (sscanf(line, "down %ld", &n) == 1) {
            while (count > n) munmap(blocks[--count], MIB);
            say("at %ld MiB\n", count);
        } else if (strncmp(line, "check", 5) == 0) {
            for (long i = 0; i < count; i++)
                if (!intact(blocks[i], i)) {
                    say("block %ld was corrupted\n", i);
                    return 5;
                }
            say("verified %ld MiB\n", count);
        } else if (strncmp(line, "urg", 3) == 0) {
            say("sigurg=%ld\n", urgs);
        } else if (sscanf(line, "threads %ld", &n) == 1) {
            for (long i = 0; i < n; i++) {
                pthread_t t;
                if (pthread_create(&t, NULL, wait_forever, NULL) != 0) return 6;
            }
            say("threads started: %ld\n", n);
        } else if (strncmp(line, "churn", 5) == 0) {
            pthread_t t;
            if (pthread_create(&t, NULL, churn, NULL) != 0) return 6;
            say("churning in %ld thread\n", 1);
        } else if (strncmp(line, "crash-thread", 12) == 0) {
            pthread_t t;
            if (pthread_create(&t, NULL, crash, NULL) != 0) return 6;
            pthread_join(t, NULL);
        } else {
            say("unknown command (%ld)\n", 0);
            return 2;
        }
    }
    return 0;
}
