package main

/*
static int deref(int *p) { return *p; }
*/
import "C"

import "fmt"

func crashInC() int {
	return int(C.deref(nil))
}

func main() {
	fmt.Println("calling into C")
	fmt.Println(crashInC())
}
