/* Null write three calls deep: the classic SIGSEGV (SEGV_MAPERR at 0). */
#include <stdio.h>

__attribute__((noinline)) static void level3(volatile int *p) { *p = 42; }
__attribute__((noinline)) static void level2(volatile int *p) { level3(p); __asm__ volatile(""); }
__attribute__((noinline)) static void level1(volatile int *p) { level2(p); __asm__ volatile(""); }

int main(void) {
    level1((volatile int *)0);
    return 0;
}
