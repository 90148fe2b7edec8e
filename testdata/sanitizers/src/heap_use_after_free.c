#include <stdlib.h>

struct session { int id; int refs; };

static int read_refs(struct session *s) { return s->refs; }

int main(void) {
    struct session *s = malloc(sizeof *s);
    s->id = 1;
    s->refs = 2;
    free(s);
    return read_refs(s);
}
