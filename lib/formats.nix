# The formats of the values that reach LXC's config or a command line, as
# regular expressions with a description (formats.json, which the helper
# compiles in as well: both sides check with the same rules).
let
  formats = builtins.fromJSON (builtins.readFile ./formats.json);
in
builtins.mapAttrs
  (_: format: format // {
    # Whether `value` is a string of this format (the pattern must match all of it).
    matches = value: builtins.isString value && builtins.match format.pattern value != null;
  })
  formats
