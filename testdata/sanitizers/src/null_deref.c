#include <stddef.h>

struct config { int port; };

static int port_of(const struct config *c) { return c->port; }

int main(void) {
    const struct config *missing = NULL;
    return port_of(missing);
}
