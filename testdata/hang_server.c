/* A tiny HTTP server that stops answering: it serves K requests (argv[1])
 * on 127.0.0.1, port argv[2] (0: any; printed as "port N"), then its
 * serving thread blocks for good in hang_here(). A second thread
 * ("ticker") sleeps in a loop, so the dump has more than one thread. With
 * argv[3] = "notify" it also pings
 * the systemd watchdog (WATCHDOG=1 to $NOTIFY_SOCKET) once per request
 * served and sends READY=1 first: it stops pinging when it hangs. With
 * argv[3] = "recover" each hang lasts 3 s, then it serves K requests again
 * and hangs again, without end. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void notify(const char *msg) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path) return;
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (addr.sun_path[0] == '@') addr.sun_path[0] = 0;
    sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&addr, sizeof addr);
    close(fd);
}

__attribute__((noinline)) void hang_here(int recover) {
    printf("hanging now\n");
    fflush(stdout);
    if (!recover)
        for (;;) pause();
    sleep(3);
    printf("recovered\n");
    fflush(stdout);
}

static void *ticker(void *arg) {
    (void)arg;
    for (;;) sleep(1);
    return NULL;
}

__attribute__((noinline)) static void serve(int listener, int k, int pings, int recover) {
    for (int served = 0;; served++) {
        if (served == k) {
            hang_here(recover);
            served = -1;
            continue;
        }
        int conn = accept(listener, NULL, NULL);
        if (conn < 0) continue;
        char buf[1024];
        (void)read(conn, buf, sizeof buf);
        const char *ok = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
        (void)write(conn, ok, strlen(ok));
        close(conn);
        if (pings) notify("WATCHDOG=1");
    }
}

int main(int argc, char **argv) {
    int k = argc > 1 ? atoi(argv[1]) : 2;
    int port = argc > 2 ? atoi(argv[2]) : 0;
    int pings = argc > 3 && strcmp(argv[3], "notify") == 0;
    int recover = argc > 3 && strcmp(argv[3], "recover") == 0;
    pthread_t t;
    pthread_create(&t, NULL, ticker, NULL);
    pthread_setname_np(t, "ticker");
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 64)) return 1;
    socklen_t len = sizeof addr;
    getsockname(listener, (struct sockaddr *)&addr, &len);
    printf("port %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    if (pings) notify("READY=1\nMAINPID=1");
    serve(listener, k, pings, recover);
    return 0;
}
