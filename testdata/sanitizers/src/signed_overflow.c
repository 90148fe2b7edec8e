#include <limits.h>
#include <stdio.h>

static int add_credit(int balance, int amount) { return balance + amount; }

int main(void) {
    volatile int big = INT_MAX;
    int total = add_credit(big, 1);
    printf("total=%d\n", total);
    return 0;
}
