// usage: bench_go_http
//
// A net/http server that makes garbage on every request, so that the Go
// runtime's garbage collector runs often and preempts goroutines with
// SIGURG (asynchronous preemption, Go >= 1.14). Listens on 127.0.0.1 on a
// port the kernel picks and prints "port=N"; answers every request with 200
// and a small body built from freshly allocated objects. On SIGTERM or
// SIGINT it prints "utime_us=U stime_us=S requests=R" (getrusage
// RUSAGE_SELF) and exits 0, so a benchmark can tell the server's CPU time
// from its supervisor's.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
)

type node struct {
	next  *node
	value [6]int64
}

// A list of small objects: pointer-rich garbage the collector must trace.
func garbage(n int) *node {
	var head *node
	for i := 0; i < n; i++ {
		head = &node{next: head, value: [6]int64{int64(i)}}
	}
	return head
}

// Some live heap, so that each cycle has real marking to do.
var live []*node

func main() {
	for i := 0; i < 64; i++ {
		live = append(live, garbage(4096))
	}
	var requests atomic.Int64
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		list := garbage(256)
		if n%64 == 0 {
			live[n/64%int64(len(live))] = garbage(4096)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(strconv.FormatInt(list.value[0], 10)))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("port=%d\n", ln.Addr().(*net.TCPAddr).Port)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go http.Serve(ln, nil)
	<-stop
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("utime_us=%d stime_us=%d requests=%d\n",
		ru.Utime.Sec*1000000+ru.Utime.Usec, ru.Stime.Sec*1000000+ru.Stime.Usec, requests.Load())
}
