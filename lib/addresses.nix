# Address arithmetic the host module needs: the DHCP ranges it hands to
# dnsmasq and the sanity checks of its options. IPv4 is done here on
# integers; IPv6 parsing is nixpkgs' lib.network.ipv6.
{ lib }:
let
  inherit (builtins) fromJSON genList match;
  inherit (lib) concatMapStringsSep foldl' toLower zipListsWith;

  # 2^n for 0 <= n <= 32.
  pow2 = n: foldl' (acc: _: acc * 2) 1 (genList (i: i) n);

  formats = import ./formats.nix;
in
rec {
  isIPv4 = formats.ipv4Address.matches;

  # "10.101.0.1" -> 174391297
  ipv4ToInt = s:
    let groups = match "([0-9]+)\\.([0-9]+)\\.([0-9]+)\\.([0-9]+)" s; in
    if !(isIPv4 s) then throw "'${s}' is not an IPv4 address"
    else foldl' (acc: g: acc * 256 + fromJSON g) 0 groups;

  # 174391297 -> "10.101.0.1"
  intToIPv4 = n:
    concatMapStringsSep "." (shift: toString (lib.mod (n / pow2 shift) 256)) [ 24 16 8 0 ];

  # The subnet an address lies in: { network; broadcast; } as integers.
  ipv4Subnet = address: prefixLength:
    let
      size = pow2 (32 - prefixLength);
      network = ipv4ToInt address / size * size;
    in
    { inherit network; broadcast = network + size - 1; };

  ipv4SubnetsOverlap = a: b:
    let
      x = ipv4Subnet a.address a.prefixLength;
      y = ipv4Subnet b.address b.prefixLength;
    in
    x.network <= y.broadcast && y.network <= x.broadcast;

  # The addresses above the host's own up to the broadcast address, for DHCP:
  # { start; end; } as strings, or null when there is no room.
  ipv4DhcpRange = address: prefixLength:
    let
      own = ipv4ToInt address;
      subnet = ipv4Subnet address prefixLength;
    in
    if own + 1 > subnet.broadcast - 1 then null
    else { start = intToIPv4 (own + 1); end = intToIPv4 (subnet.broadcast - 1); };

  # An IPv6 address as its eight 16-bit groups (integers).
  ipv6Groups = s:
    map lib.trivial.fromHexString
      (lib.splitString ":" (lib.network.ipv6.fromString s).address);

  # Whether `address` lies in `prefix`/`prefixLength`.
  ipv6InPrefix = address: prefix: prefixLength:
    let
      # How many of the top bits of group i belong to the prefix.
      bitsOf = i: lib.max 0 (lib.min 16 (prefixLength - 16 * i));
      masked = groups: zipListsWith (i: g: g / pow2 (16 - bitsOf i)) (genList (i: i) 8) groups;
    in
    masked (ipv6Groups address) == masked (ipv6Groups prefix);

  # The last group of a prefix of at most 112 bits is all host bits: the
  # prefix with that group replaced by `low` (an integer below 65536).
  ipv6WithLowGroup = prefix: low:
    let groups = ipv6Groups prefix; in
    concatMapStringsSep ":" (g: toLower (lib.trivial.toHexString g))
      (lib.take 7 groups ++ [ low ]);
}
