# What the evaluation tests share: evaluating the modules against the stubs,
# and checks that say what differed.
{ lib }:
let
  inherit (lib) concatMapStringsSep filter length;

  pretty = lib.generators.toPretty { multiline = true; };

  # Continuation lines line up under the first.
  indent = text: lib.concatStringsSep "\n            " (lib.splitString "\n" text);
in
rec {
  fakePkgs = import ./fake-pkgs.nix;
  hostDefaults = builtins.fromJSON (builtins.readFile ../../lib/host-defaults.json);

  # NixOS's `utils` module argument, what of it the modules use: as
  # nixos/lib/utils.nix's escapeSystemdExecArgs, each argument quoted as
  # JSON, which systemd's Exec lines read as C-style quoting, with systemd's
  # `%` specifiers and `$` expansions doubled.
  utils = {
    escapeSystemdExecArgs = lib.concatMapStringsSep " "
      (arg: lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON (toString arg)));
  };

  # A NixOS-like evaluation of `modules` with the stubs.
  evaluation = { pkgs ? fakePkgs { }, specialArgs ? { } }: modules:
    lib.evalModules {
      modules = [ ./stubs.nix ] ++ modules;
      specialArgs = { inherit pkgs utils; } // specialArgs;
    };
  # Its config.
  evalWith = args: modules: (evaluation args modules).config;

  evalHost = modules: evalWith { } ([ ../../modules/host ] ++ modules);
  # The host module's option declarations, as the NixOS manual lists them
  # (lib.optionAttrSetToDocList): name, type, default, description.
  hostOptions = lib.optionAttrSetToDocList (evaluation { } [ ../../modules/host ]).options;
  evalGuest = modules: evalWith { } ([ ../../modules/guest.nix ] ++ modules);

  # Assertions that do not hold, as their messages.
  failedAssertions = config: map (a: a.message) (filter (a: !a.assertion) config.assertions);

  # A check: `actual` must equal `expected`.
  eq = name: actual: expected: { inherit name actual; wanted = pretty expected; ok = actual == expected; };
  # A check: `predicate actual` must hold; `wanted` says in words what was wanted.
  that = name: actual: wanted: predicate: { inherit name actual wanted; ok = predicate actual; };

  hasInfix = name: infix: text: that name text "a text containing ${builtins.toJSON infix}" (lib.hasInfix infix);
  lacksInfix = name: infix: text: that name text "a text without ${builtins.toJSON infix}" (t: !(lib.hasInfix infix t));
  contains = name: element: list: that name list "a list containing ${pretty element}" (lib.elem element);
  # Whether `value` evaluates wholly, or fails as a NixOS evaluation would
  # (a throw, a failed type check, an unknown option).
  evaluates = value: (builtins.tryEval (builtins.deepSeq value true)).success;
  # A check: `of good` evaluates and `of bad` fails (so that it fails for
  # what differs between them).
  rejects = name: of: good: bad:
    eq name { good = evaluates (of good); bad = evaluates (of bad); } { good = true; bad = false; };
  assertionFails = name: config: infix:
    that name (failedAssertions config) "a failed assertion mentioning ${builtins.toJSON infix}"
      (lib.any (lib.hasInfix infix));

  # Evaluates every check of every suite; prints the failures (what differed)
  # and fails, or returns a one-line summary.
  run = suites:
    let
      checks = lib.concatLists (lib.mapAttrsToList
        (suite: list: map (c: c // { name = "${suite}: ${c.name}"; }) list)
        suites);
      failed = filter (c: !c.ok) checks;
      report = c: ''
        FAIL ${c.name}
          expected: ${indent c.wanted}
          actual:   ${indent (pretty c.actual)}'';
    in
    if failed == [ ] then "${toString (length checks)} checks passed"
    else builtins.trace ("\n" + concatMapStringsSep "\n" report failed)
      (throw "${toString (length failed)} of ${toString (length checks)} checks failed");
}
