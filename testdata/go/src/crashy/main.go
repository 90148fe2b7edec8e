package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

type Server struct{ routes map[string]int }

func (s *Server) register(name string) {
	s.routes[name] = len(name)
}

func plainPanic() {
	panic(errors.New("config: missing field \"listen\""))
}

func nilMap() {
	var s Server
	s.register("/health")
}

func deadlock() {
	ch := make(chan int)
	<-ch
}

func concurrentMapWrites() {
	m := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 1000000; j++ {
				m[j%100] = i
			}
		}(i)
	}
	wg.Wait()
}

func indexInGoroutine() {
	done := make(chan struct{})
	items := []string{"a", "b", "c"}
	go func() {
		worker(items, 5)
		close(done)
	}()
	<-done
}

func worker(items []string, i int) string {
	return items[i]
}

func repanic() {
	defer func() {
		r := recover()
		panic(fmt.Sprintf("cleanup failed after: %v", r))
	}()
	panic("first failure")
}

func sigabrt() {
	fmt.Println("about to abort")
	syscall.Kill(os.Getpid(), syscall.SIGABRT)
	time.Sleep(time.Second)
}

func main() {
	fmt.Println("starting", os.Args[1])
	switch os.Args[1] {
	case "panic":
		plainPanic()
	case "nilmap":
		nilMap()
	case "deadlock":
		deadlock()
	case "concurrent":
		concurrentMapWrites()
	case "index":
		indexInGoroutine()
	case "repanic":
		repanic()
	case "sigabrt":
		sigabrt()
	case "nilptr":
		var s *Server
		fmt.Println(len(s.routes))
	case "multiline":
		panic("line one\nline two")
	}
}
