/* Integer division by zero: SIGFPE with FPE_INTDIV. */
volatile int zero = 0;

int main(void) {
    return 100 / zero;
}
