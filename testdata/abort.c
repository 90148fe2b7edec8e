/* abort(): SIGABRT sent by glibc with tgkill (si_code SI_TKILL). */
#include <stdlib.h>

int main(void) {
    abort();
}
