#include <string.h>

static int checksum(const char *input) {
    char buf[8];
    int sum = 0;
    strcpy(buf, input);
    for (int i = 0; i <= 8; i++) sum += buf[i];
    return sum;
}

int main(void) { return checksum("abcdefg") & 1; }
