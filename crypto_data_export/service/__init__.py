"""The background service: start/stop of a detached scheduler, its pidfile, its log and the systemd unit."""
