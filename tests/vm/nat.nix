# The VM test's NAT container: an `internet` interface on brNC-internet,
# configured by the host's dnsmasq (DHCPv4, DHCPv6, DNS).
{
  network = {
    ip = "10.101.0.20";
    enableNat = true;
  };
  configuration = { ... }: { };
}
