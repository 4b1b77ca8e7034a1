# A tenant's flake: what the helper fetches for it, and how its outputs are
# called. A flake, its flake.lock included, may be written by someone who is
# not root, and must read nothing on the host outside its own directory.
#
# builtins.getFlake cannot promise that (Nix 2.8, tried): it locks the flake
# first, fetching every input that flake.nix declares and flake.lock lacks,
# and it copies a `path:` input into the store before it compares the copy
# with the lock's hash, so a refused lock still leaves a host directory in
# the store, world-readable. And while the flakes feature is on, any code may
# call builtins.getFlake "path:/x" or builtins.fetchTree { type = "path"; },
# which restricted evaluation does not check. So the helper does what
# getFlake does in two Nix processes (rust-helper/src/nix/flake_inputs.rs):
#
# fetch: with the flakes feature, evaluating no code of the flake: fetches
#   the flake's source (which root named), reads its flake.lock as data,
#   checks every locked input before any is fetched, then fetches them all;
# call:  in restricted evaluation without the flakes feature: imports each
#   flake.nix and calls its outputs with the fetched sources, as getFlake's
#   call-flake does. The lock is used as it is, never updated.
let
  inherit (builtins)
    all attrNames concatStringsSep elem elemAt filter foldl' functionArgs head isList isString
    length mapAttrs match readDir split substring tail throw;

  # "/a/./b//c" -> [ "a" "b" "c" ]; ".." is kept.
  components = path: filter (part: isString part && part != "" && part != ".") (split "/" path);

  # `parts` with each ".." taking the part before it away; null when one
  # climbs above the start.
  normalize = parts:
    let
      step = kept: part:
        if kept == null then null
        else if part != ".." then kept ++ [ part ]
        else if kept == [ ] then null
        else take (length kept - 1) kept;
      take = n: list: builtins.genList (i: elemAt list i) n;
    in
    foldl' step [ ] parts;

  # Whether `inner` (components) lies at or below `outer`.
  isWithin = outer: inner:
    length inner >= length outer
    && all (i: elemAt inner i == elemAt outer i) (builtins.genList (i: i) (length outer));

  drop = n: list: builtins.genList (i: elemAt list (i + n)) (length list - n);

  join = parts: concatStringsSep "/" parts;
in
{
  # fetch { origin, url, dir, ownDir, allowedPaths }:
  #   url:          the flake's source for builtins.fetchTree (root named it):
  #                 a URL, or the attributes of a local path
  #   dir:          where flake.nix is in it ("" for its top)
  #   ownDir:       the flake's own directory on this host (its real path),
  #                 or null where the flake is not a local one
  #   allowedPaths: host paths root allows for flake inputs (real paths)
  # Returns { lock, dir, sources }: the lock as it is, and each of its
  # nodes' fetched source by node name: { path; info; }, its store path and
  # builtins.fetchTree's other attributes.
  fetch = { origin, url, dir, ownDir, allowedPaths }:
    let
      inDir = if dir == "" then "" else "/${dir}";
      # A local flake's lock is checked where it is before the flake's own
      # directory is copied (a refused flake leaves nothing in the store),
      # and again as fetched, which is what counts.
      hostLock = if ownDir == null then null else readLock "${ownDir}${inDir}";
      top = builtins.seq (hostLock == null || (plansOf hostLock).checked) (builtins.fetchTree url);
      lock =
        if !builtins.pathExists (top.outPath + inDir + "/flake.nix") then
          throw "${origin}: there is no flake.nix${if dir == "" then "" else " in ${dir}"}"
        else readLock (top.outPath + inDir);
      # A flake without a lock has no inputs but itself.
      readLock = flakeDir:
        if builtins.pathExists "${flakeDir}/flake.lock" then
          builtins.fromJSON (builtins.readFile "${flakeDir}/flake.lock")
        else { version = 7; root = "root"; nodes.root = { }; };
      refuse = key: why: throw "${origin}: flake.lock: input '${key}' ${why}";

      inherit (plansOf lock) plans checked;

      # What fetching each node of `lock` but the root takes (`plan`), all
      # checked (`checked` is true) before any is fetched.
      plansOf = lock:
        let
          nodes = lock.nodes or { };
          plans = mapAttrs (plan lock) (removeAttrs nodes [ lock.root ]);
        in
        {
          inherit plans;
          checked =
            if !(elem (lock.version or null) [ 5 6 7 ]) then
              throw "${origin}: flake.lock has version ${toString (lock.version or "none")}, not one Nix 2.8 to 2.x writes (5 to 7)"
            else if !(nodes ? ${lock.root}) then throw "${origin}: flake.lock has no root node"
            else builtins.deepSeq plans true;
        };

      # Each node's one parent: the node whose inputs name it directly (not
      # by `follows`); a relative path is resolved in its parent's source.
      parentsOf = nodes: key: filter
        (parent: elem key (filter isString (builtins.attrValues (nodes.${parent}.inputs or { }))))
        (attrNames nodes);
      subdirOf = lock: key: if key == lock.root then dir else lock.nodes.${key}.locked.dir or "";

      # A host path an input names, as components; it must be within the
      # flake's own directory or a path root allows, and reached without
      # following a symlink (checked below its boundary, on the host).
      hostPath = key: path:
        let
          parts = normalize (components path);
          own = if ownDir == null then null else components ownDir;
          allowed = filter (root: isWithin root parts) (map components allowedPaths);
        in
        if substring 0 1 path != "/" || parts == null then
          refuse key "names the host path ${path}, which is not an absolute path"
        else if own != null && isWithin own parts then
          { inOwn = true; rel = drop (length own) parts; path = "/${join parts}"; }
        else if allowed != [ ] then {
          inOwn = false;
          rel = drop (length (head allowed)) parts;
          base = "/${join (head allowed)}";
          path = "/${join parts}";
        }
        else
          refuse key ("reads the host path ${path}, outside the flake's own directory"
            + (if ownDir == null then "" else " ${ownDir}")
            + "; root may allow host paths for flake inputs (allowedFlakeInputPaths in the host file, "
            + "nixcloud.containers.allowedFlakeInputPaths on NixOS)");

      # Fails unless each of `rel` below `base` is a directory, the last a
      # directory or a file: never a symlink, which could lead anywhere.
      noLinks = key: base: rel:
        let
          check = index:
            if index == length rel then true
            else
              let
                name = elemAt rel index;
                here = "${base}/${join (builtins.genList (i: elemAt rel i) index)}";
                type = (readDir here).${name} or null;
                last = index + 1 == length rel;
              in
              if type == "directory" || (last && type == "regular") then check (index + 1)
              else refuse key "names ${here}/${name}, which is ${if type == null then "not there" else "a ${type}"}: only real directories and files are fetched";
        in
        check 0;

      # What a file: URL names: its path, or a refusal.
      fileUrl = key: url:
        let parsed = match "file://(/[^?#%]*)([?#].*)?" url; in
        if parsed == null then refuse key "has the URL ${url}, in a form this helper does not read"
        else { path = head parsed; rest = if elemAt parsed 1 == null then "" else elemAt parsed 1; };

      isRemoteUrl = url: match "(https?|ssh|git)://[^/]+.*" url != null;

      # What fetching node `key` takes: the locked attributes, or where they
      # name a host path inside the flake's own directory, that path in the
      # flake's source as fetched above (no host access, nothing to race);
      # git and mercurial read their repository where it is, once no link
      # leads out of it. Checked for every node before any is fetched.
      plan = lock: key: node:
        let
          locked = node.locked or (refuse key "is not locked");
          attrs = (node.info or { }) // removeAttrs locked [ "dir" ];
          type = attrs.type or null;
          local = path: makeAttrs: kind:
            let where = hostPath key path; in
            if where.inOwn && kind == "copy" then
              { inTop = where.rel; inherit makeAttrs; }
            else
              builtins.seq (noLinks key (if where.inOwn then ownDir else where.base) where.rel)
                { attrs = makeAttrs where.path; };
        in
        if type == "path" then
          if substring 0 1 (attrs.path or "") == "/" then
            local attrs.path (path: attrs // { inherit path; }) "copy"
          else
            let
              parents = parentsOf lock.nodes key;
              parent = head parents;
              parts = normalize (components (subdirOf lock parent) ++ components (attrs.path or ""));
            in
            if length parents != 1 then refuse key "has a relative path and not one node naming it"
            else if parts == null then refuse key "has the relative path ${attrs.path}, which leaves its flake's source"
            else { relative = parts; inherit parent; makeAttrs = path: attrs // { inherit path; }; }
        else if elem type [ "git" "hg" "tarball" "file" ] then
          let url = attrs.url or (refuse key "has no URL"); in
          if type == "git" && (attrs.submodules or false) then
            refuse key "is a git input with submodules, whose .gitmodules may name host paths"
          else if isRemoteUrl url then { inherit attrs; }
          else if substring 0 5 url == "file:" then
            let file = fileUrl key url; in
            local file.path (path: attrs // { url = "file://${path}${file.rest}"; })
              (if elem type [ "tarball" "file" ] then "copy" else "inPlace")
          else refuse key "has the URL ${url}, whose scheme this helper does not fetch"
        else if elem type [ "github" "gitlab" "sourcehut" ] then { inherit attrs; }
        else refuse key "has the type ${toString type}, which this helper does not fetch";

      # Fetches node `key` as planned; paths inside a fetched source are
      # checked for links there first.
      fetchNode = key: p:
        if p ? attrs then builtins.fetchTree p.attrs
        else if p ? inTop then
          builtins.seq (noLinks key top.outPath p.inTop)
            (builtins.fetchTree (p.makeAttrs "${top.outPath}/${join p.inTop}"))
        else
          let base = sources.${p.parent}.outPath; in
          builtins.seq (noLinks key base p.relative)
            (builtins.fetchTree (p.makeAttrs "${base}/${join p.relative}"));

      sources = mapAttrs fetchNode plans // { ${lock.root} = top; };
    in
    builtins.seq checked {
      inherit lock dir;
      # builtins.toJSON writes an attribute set with an outPath as that path.
      sources = mapAttrs (_: source: { info = removeAttrs source [ "outPath" ]; path = source.outPath; }) sources;
    };

  # call origin fetched: the flake's outputs (with inputs, sourceInfo and
  # the source's attributes, as builtins.getFlake gives them), from what
  # `fetch` returned (the sources' store paths are allowed to restricted
  # evaluation by the helper).
  call = origin: fetched:
    let
      inherit (fetched) lock;
      sources = mapAttrs (_: source: source.info // { outPath = builtins.storePath source.path; }) fetched.sources;
      resolve = spec: if isList spec then follow lock.root spec else spec;
      follow = key: path:
        if path == [ ] then key else follow (resolve lock.nodes.${key}.inputs.${head path}) (tail path);
      nodes = mapAttrs
        (key: node:
          let
            sourceInfo = sources.${key};
            subdir = if key == lock.root then fetched.dir else node.locked.dir or "";
            flake = import (sourceInfo.outPath + (if subdir == "" then "" else "/${subdir}") + "/flake.nix");
            inputs = mapAttrs (_: spec: nodes.${resolve spec}) (node.inputs or { });
            # What flake.nix declares and the lock lacks: Nix would lock
            # (fetch) it; here it is an error.
            unlocked = filter (name: !(inputs ? ${name}))
              (attrNames (flake.inputs or { })
                ++ filter (name: name != "self" && !(functionArgs flake.outputs).${name})
                  (attrNames (functionArgs flake.outputs)));
            outputs =
              if key == lock.root && unlocked != [ ] then
                throw "${origin}: flake.lock lacks the input '${head unlocked}' of flake.nix: lock it (nix flake lock) and keep flake.lock with the flake"
              else flake.outputs (inputs // { self = result; });
            result = outputs // sourceInfo // { inherit inputs outputs sourceInfo; };
          in
          if node.flake or true then result else sourceInfo)
        lock.nodes;
    in
    nodes.${lock.root};
}
