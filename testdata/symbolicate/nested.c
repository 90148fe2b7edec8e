/* Null write three calls deep, built -O0: the classic SIGSEGV at address 0.
 * -DVARIANT builds "the next deploy": other code at the same addresses. */
#include <stdio.h>

#ifdef VARIANT
__attribute__((noinline)) int padding(int x) {
    volatile int acc = 0;
    for (int i = 0; i < x; i++) acc += i * 7 + (acc >> 3);
    return acc;
}
#endif

__attribute__((noinline)) static void level3(volatile int *p) { *p = 42; }
__attribute__((noinline)) static void level2(volatile int *p) { level3(p); __asm__ volatile(""); }
__attribute__((noinline)) static void level1(volatile int *p) { level2(p); __asm__ volatile(""); }

int main(void) {
    level1((volatile int *)0);
    return 0;
}
