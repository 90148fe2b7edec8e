/* usage: bench_http [THREADS]   (default 1)
 * A minimal HTTP/1.1 keep-alive server for benches/capture.py: listens on
 * 127.0.0.1 on a port the kernel picks and prints "port=N" (flushed), then
 * answers every request (anything ending in an empty line; no bodies) with a
 * fixed "200 OK" of 2 bytes. THREADS workers each run their own epoll loop;
 * the listening socket is in all of them (EPOLLEXCLUSIVE). On SIGTERM or
 * SIGINT it prints "utime_us=U stime_us=S requests=R" (getrusage
 * RUSAGE_SELF) and exits 0, so the benchmark can tell the server's CPU time
 * from its supervisor's. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define MAX_EVENTS 256

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
#define RESPONSE_LEN (sizeof RESPONSE - 1)

static int listen_fd;
/* Per connection (indexed by fd; a connection belongs to one worker): how far
 * into "\r\n\r\n" the bytes read so far have matched. */
static unsigned char matched[MAX_FD];
static unsigned long requests[64];

/* Async-signal-safe decimal formatting. */
static size_t put_num(char *p, unsigned long v) {
    char tmp[24];
    size_t n = 0, i;
    do tmp[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
    for (i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return n;
}

static size_t put_str(char *p, const char *s) {
    size_t n = strlen(s);
    memcpy(p, s, n);
    return n;
}

static void on_term(int sig) {
    (void)sig;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    unsigned long total = 0;
    for (int i = 0; i < 64; i++) total += requests[i];
    char buf[160];
    size_t n = 0;
    n += put_str(buf + n, "utime_us=");
    n += put_num(buf + n, (unsigned long)(ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec));
    n += put_str(buf + n, " stime_us=");
    n += put_num(buf + n, (unsigned long)(ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec));
    n += put_str(buf + n, " requests=");
    n += put_num(buf + n, total);
    buf[n++] = '\n';
    ssize_t w = write(1, buf, n);
    (void)w;
    _exit(0);
}

static void close_conn(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    matched[fd] = 0;
    close(fd);
}

/* Reads what is there, counts complete requests, answers them in one send. */
static void serve(int ep, int fd, unsigned long *count) {
    static __thread char in[16384];
    static __thread char out[64 * RESPONSE_LEN];
    ssize_t n = recv(fd, in, sizeof in, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0 || fd >= MAX_FD) {
        close_conn(ep, fd);
        return;
    }
    static const char END[] = "\r\n\r\n";
    unsigned m = matched[fd];
    size_t answers = 0, used = 0;
    for (ssize_t i = 0; i < n; i++) {
        if (in[i] == END[m]) {
            m++;
        } else {
            m = in[i] == '\r' ? 1 : 0;
        }
        if (m == 4) {
            m = 0;
            answers++;
        }
    }
    matched[fd] = (unsigned char)m;
    *count += answers;
    while (answers > 0) {
        size_t batch = answers < 64 ? answers : 64;
        for (size_t i = 0; i < batch; i++) memcpy(out + i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
        used = batch * RESPONSE_LEN;
        size_t off = 0;
        while (off < used) {
            /* The socket is blocking: a tiny answer on loopback never waits
             * long, and a client that stops reading only stalls this worker. */
            ssize_t w = send(fd, out + off, used - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                close_conn(ep, fd);
                return;
            }
            off += (size_t)w;
        }
        answers -= batch;
    }
}

static void *worker(void *arg) {
    long id = (long)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) exit(10);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = listen_fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) != 0) exit(11);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            exit(12);
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listen_fd) {
                for (;;) {
                    int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                    if (c < 0) break; /* EAGAIN: another worker took it, or none left */
                    if (c >= MAX_FD) {
                        close(c);
                        continue;
                    }
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) != 0) close(c);
                }
            } else {
                serve(ep, fd, &requests[id]);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    long threads = argc > 1 ? atol(argv[1]) : 1;
    if (threads < 1 || threads > 64) threads = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigfillset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0) return 2;
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0) return 3;
    if (listen(listen_fd, 1024) != 0) return 4;
    socklen_t len = sizeof addr;
    if (getsockname(listen_fd, (struct sockaddr *)&addr, &len) != 0) return 5;
    printf("port=%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    for (long i = 1; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)i) != 0) return 6;
    }
    worker((void *)0);
    return 0;
}
