/* The graph tap's answer to the scheduler's asks, in C.
 *
 * llama.cpp's scheduler calls the evaluation callback twice for a node it is
 * told to stop at: once to ask (before computing), once when computed. It asks
 * about every node of every graph, hundreds per decoded token on a small MoE
 * model, and a tracing listener wants a handful of them. Each ask answered in
 * Python is a ctypes callback (the GIL, argument conversion, a name read); here
 * the ask is a string comparison, and only the computed nodes asked for reach
 * Python (shimmy_py/native/tap.py), through `computed`.
 *
 * user_data points at a struct shimmy_tap that Python owns and fills
 * (shimmy_py/native/tap.py, _Filter): the node names' bases (the name less
 * its "-<layer>" suffix) to stop at. A node is asked for when its name is
 * "<base>-<digits>" with <base> in the list; n_names 0 declines every node.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "ggml.h"

#define SHIMMY_TAP_NAMES 8

struct shimmy_tap {
    bool (*computed)(struct ggml_tensor * t, bool ask, void * user_data);
    int n_names;
    char names[SHIMMY_TAP_NAMES][GGML_MAX_NAME];
};

/* sizes Python checks its ctypes mirror against */
size_t shimmy_tap_size(void) { return sizeof(struct shimmy_tap); }
size_t shimmy_tap_names_offset(void) { return offsetof(struct shimmy_tap, names); }
int shimmy_tap_max_names(void) { return SHIMMY_TAP_NAMES; }
int shimmy_tap_max_name(void) { return GGML_MAX_NAME; }

static bool asked_for(const struct shimmy_tap * tap, const char * name) {
    const char * dash = strrchr(name, '-');
    if (dash == NULL || dash[1] == '\0') {
        return false;
    }
    for (const char * p = dash + 1; *p; p++) {
        if (*p < '0' || *p > '9') {
            return false;   /* "... (reshaped)", "... (view)": not a layer's node */
        }
    }
    size_t len = (size_t)(dash - name);
    if (len >= GGML_MAX_NAME) {
        return false;
    }
    for (int i = 0; i < tap->n_names; i++) {
        if (strncmp(tap->names[i], name, len) == 0 && tap->names[i][len] == '\0') {
            return true;
        }
    }
    return false;
}

bool shimmy_tap_eval(struct ggml_tensor * t, bool ask, void * user_data) {
    const struct shimmy_tap * tap = user_data;
    if (ask) {
        return asked_for(tap, t->name);
    }
    return tap->computed(t, false, NULL);
}
