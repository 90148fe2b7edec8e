/* The child forks; the grandchild crashes. With follow_forks the tracer
 * captures the grandchild; the child itself exits 0 after reaping it. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    pid_t pid = fork();
    if (pid == 0) {
        *(volatile int *)0 = 1;
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("grandchild=%d signaled=%d signal=%d\n", (int)pid, WIFSIGNALED(status),
           WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return 0;
}
