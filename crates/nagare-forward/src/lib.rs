//! Forward protocol v1 codec and handshake/ack state machines, without sockets.
