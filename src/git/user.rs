//! The user running sgr: name, uid and primary gid, as build images bake
//! them in (`USER`, `USER_ID`, `USER_GROUP_ID`).

use std::path::Path;

/// The current OS user.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CurrentUser {
    /// Login name from the password database, else `$USER`, else the uid.
    pub name: String,
    /// Real user id.
    pub uid: u32,
    /// Real primary group id.
    pub gid: u32,
}

impl CurrentUser {
    /// Look up the user of this process.
    #[must_use]
    pub fn current() -> Self {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let from_database = std::fs::read_to_string(Path::new("/etc/passwd"))
            .ok()
            .and_then(|passwd| name_for_uid(&passwd, uid));
        let name = from_database
            .or_else(|| crate::env::process(crate::env::USER).filter(|name| !name.is_empty()))
            .unwrap_or_else(|| uid.to_string());
        Self { name, uid, gid }
    }
}

/// The login name of `uid` in `/etc/passwd` text.
fn name_for_uid(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid: u32 = fields.nth(1)?.parse().ok()?;
        (entry_uid == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_name_of_a_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nkmutch:x:1000:1000::/home/kmutch:/bin/bash\n";
        assert_eq!(name_for_uid(passwd, 1000).as_deref(), Some("kmutch"));
        assert_eq!(name_for_uid(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_for_uid(passwd, 42), None);
    }

    #[test]
    fn current_user_matches_the_process() {
        let user = CurrentUser::current();
        assert!(!user.name.is_empty());
        assert_eq!(user.uid, rustix::process::getuid().as_raw());
    }
}
