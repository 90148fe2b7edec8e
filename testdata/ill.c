/* ud2: SIGILL with ILL_ILLOPN. */
int main(void) {
    __asm__ volatile("ud2");
    return 0;
}
