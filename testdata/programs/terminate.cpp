// Compiled by tests/cpp.rs with g++; each mode ends in std::terminate.
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

static void load_config(const std::string &path) {
    throw std::runtime_error("cannot open " + path);
}

struct ParseError {
    int code;
};

int main(int argc, char **argv) {
    std::string mode = argc > 1 ? argv[1] : "runtime_error";
    std::printf("starting %s\n", mode.c_str());
    std::fflush(stdout);
    if (mode == "runtime_error") load_config("/etc/app.conf");
    if (mode == "custom") throw ParseError{7};
    if (mode == "no_active") std::terminate();
    return 0;
}
