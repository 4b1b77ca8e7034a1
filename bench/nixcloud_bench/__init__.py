"""The modules of bench/run, one job each:

    project     where the repository keeps what the bench uses: the helper,
                lib/cli.nix, and the scaffolding shared with the tests
                (scripts/netns, tests/fake-nixpkgs, NIXPKGS_LIB)
    commands    running and timing commands, the helper's timing lines
    stats       the median of samples, the range of counts
    host        the test host inside the namespace: the helper, LXC, the
                container files, the containers of a run
    measure/    the measurements, one module per section of the report
    targets     the targets of issues 6, 11, 13 and 20 and the PASS/MISS check
    report      the tables and the printed report

bench/run itself parses the arguments and runs the outer process (build,
namespace, directory, cleanup) and the inner one (measure, report).
"""
