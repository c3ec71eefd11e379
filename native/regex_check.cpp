/* Checks tensor-override patterns as llama.cpp will read them.
 *
 * llama.cpp compiles each -ot pattern with std::regex (ECMAScript grammar,
 * src/llama-model-loader.cpp) when it loads a model; a pattern it cannot
 * compile throws inside the loader. Python's `re` accepts patterns that
 * std::regex refuses (lookbehind, named groups, \A, \Z, ...), so shimmy_py
 * asks the real std::regex first, with this program built by native/build.sh
 * with the same compiler and standard library as llama.cpp.
 *
 *   regex_check PATTERN...   prints one line per pattern: "ok", or
 *                            "error: WHAT"; exits 1 if any failed
 */
#include <cstdio>
#include <regex>

int main(int argc, char **argv) {
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        try {
            std::regex pattern(argv[i]);
            (void)std::regex_search("blk.0.ffn_up_exps.weight", pattern);
            std::printf("ok\n");
        } catch (const std::exception &e) {
            std::printf("error: %s\n", e.what());
            failed = 1;
        }
    }
    return failed;
}
