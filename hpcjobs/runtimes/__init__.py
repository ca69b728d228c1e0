"""Container runtimes (plugins): each turns a ResolvedJob into the container command argv."""
