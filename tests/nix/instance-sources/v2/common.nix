{ services.nginx.enable = false; }
