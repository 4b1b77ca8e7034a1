# The host module, for configurations that import it by this path: it lives
# in ./host (modules/host/default.nix), one file per concern.
{ imports = [ ./host ]; }
