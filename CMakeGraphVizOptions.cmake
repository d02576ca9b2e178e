# `cmake --graphviz` options for docs/architecture.png (tools/dev graph): the project's own
# libraries and the programs built on them, without tests, benchmarks and system libraries.
set(GRAPHVIZ_GRAPH_NAME "rumor")
set(GRAPHVIZ_EXTERNAL_LIBS FALSE)
set(GRAPHVIZ_GENERATE_PER_TARGET FALSE)
set(GRAPHVIZ_GENERATE_DEPENDERS FALSE)
set(GRAPHVIZ_IGNORE_TARGETS ".*_test$" ".*-replay$" ".*_fuzz$" "rumor-bench" "rumor_header_check"
    "rumor-store-demo" "rumor_engine")
