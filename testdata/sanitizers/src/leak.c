#include <stdlib.h>
#include <string.h>

static char *copy_name(const char *name) {
    char *out = malloc(strlen(name) + 1);
    strcpy(out, name);
    return out;
}

int main(void) {
    char *name = copy_name("leaky");
    name = NULL;
    return 0;
}
