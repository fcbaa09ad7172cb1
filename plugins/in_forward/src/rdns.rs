//! Reverse DNS for `source_hostname_key` (Fluentd's `resolve_hostname`), with getnameinfo.

use std::ffi::CStr;
use std::net::IpAddr;

/// The host name of `ip`, or its textual address when it has none. Blocking: call it from
/// a blocking thread.
pub fn hostname_of(ip: IpAddr) -> String {
    reverse_lookup(ip).unwrap_or_else(|| ip.to_string())
}

/// The host name registered for `ip`, if any.
pub fn reverse_lookup(ip: IpAddr) -> Option<String> {
    let mut host = [0 as libc::c_char; 1025];
    let rc = match ip.to_canonical() {
        IpAddr::V4(v4) => {
            // SAFETY: an all-zero sockaddr_in is a valid value.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.octets()),
            };
            // SAFETY: the pointers and lengths describe live, correctly sized buffers.
            unsafe {
                libc::getnameinfo(
                    (&raw const sa).cast::<libc::sockaddr>(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
        IpAddr::V6(v6) => {
            // SAFETY: an all-zero sockaddr_in6 is a valid value.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_addr = libc::in6_addr {
                s6_addr: v6.octets(),
            };
            // SAFETY: as above.
            unsafe {
                libc::getnameinfo(
                    (&raw const sa).cast::<libc::sockaddr>(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo succeeded, so `host` holds a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    name.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_some_name() {
        // The exact name depends on /etc/hosts; it is never empty.
        assert!(!hostname_of(IpAddr::from([127, 0, 0, 1])).is_empty());
    }
}
