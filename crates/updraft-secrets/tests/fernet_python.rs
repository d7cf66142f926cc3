//! Fernet interoperability with Python's `cryptography` (what Airflow uses): tokens made by
//! one are read by the other with the same key(s), in both directions, including several
//! keys (`MultiFernet`: the first encrypts, every one decrypts) and rotation.
//!
//! Uses `python3` with `cryptography` when it imports; otherwise installs `cryptography` into
//! a virtualenv under the target directory first.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use updraft_secrets::Keyring;

const SETTING: &str = "core.fernet_key";

/// A Python that can import `cryptography`.
fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let system = PathBuf::from("python3");
        if imports_cryptography(&system) {
            return system;
        }
        let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fernet-python-venv");
        let venv_python = venv.join("bin/python");
        if !imports_cryptography(&venv_python) {
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
            run(Command::new(&venv_python).args(["-m", "pip", "install", "-q", "cryptography"]));
        }
        assert!(
            imports_cryptography(&venv_python),
            "cryptography is not importable even after installing it into {}",
            venv.display()
        );
        venv_python
    })
}

fn imports_cryptography(python: &PathBuf) -> bool {
    Command::new(python)
        .args(["-c", "import cryptography.fernet"])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// Runs `script` with `args` as `sys.argv[1:]`; its printed output.
fn py(script: &str, args: &[&str]) -> String {
    let script = format!(
        "import sys\nfrom cryptography.fernet import Fernet, MultiFernet, InvalidToken\n{script}"
    );
    run(Command::new(python()).arg("-c").arg(script).args(args))
}

const PLAIN: &str = "p@ss wörd ✓ {\"extra\": 1}";

#[test]
fn a_token_made_in_python_is_read_here() {
    let key = py("print(Fernet.generate_key().decode())", &[]);
    let token = py(
        "print(Fernet(sys.argv[1].encode()).encrypt(sys.argv[2].encode()).decode())",
        &[&key, PLAIN],
    );
    let keyring = Keyring::parse(&key, SETTING).unwrap();
    assert_eq!(keyring.decrypt(&token, "a value").unwrap(), PLAIN);
}

#[test]
fn a_token_made_here_is_read_in_python() {
    let key = Keyring::generate_key();
    let token = Keyring::parse(&key, SETTING).unwrap().encrypt(PLAIN);
    let plain = py(
        "sys.stdout.buffer.write(Fernet(sys.argv[1].encode()).decrypt(sys.argv[2].encode()))",
        &[&key, &token],
    );
    assert_eq!(plain, PLAIN);
}

#[test]
fn several_keys_work_the_same_in_both() {
    let new = py("print(Fernet.generate_key().decode())", &[]);
    let old = Keyring::generate_key();
    let both = format!("{new},{old}");

    // Python's MultiFernet with the old key alone, then both: read here with both.
    let old_token = py(
        "print(MultiFernet([Fernet(sys.argv[1].encode())]).encrypt(sys.argv[2].encode()).decode())",
        &[&old, PLAIN],
    );
    let keyring = Keyring::parse(&both, SETTING).unwrap();
    assert_eq!(keyring.decrypt(&old_token, "old").unwrap(), PLAIN);

    // Here the first key encrypts: Python reads it with the new key alone, not the old one.
    let token = keyring.encrypt(PLAIN);
    let check = "token = sys.argv[3].encode()\n\
                 new, old = Fernet(sys.argv[1].encode()), Fernet(sys.argv[2].encode())\n\
                 assert new.decrypt(token).decode() == sys.argv[4]\n\
                 try:\n    old.decrypt(token)\n    print('old key decrypted it')\n\
                 except InvalidToken:\n    print('ok')";
    assert_eq!(py(check, &[&new, &old, &token, PLAIN]), "ok");

    // Rotation in Python (MultiFernet.rotate) is read here with the new key alone, and
    // rotation here is read in Python with the new key alone.
    let rotated_in_python = py(
        "keys = [Fernet(k.encode()) for k in sys.argv[1].split(',')]\n\
         print(MultiFernet(keys).rotate(sys.argv[2].encode()).decode())",
        &[&both, &old_token],
    );
    let only_new = Keyring::parse(&new, SETTING).unwrap();
    assert_eq!(
        only_new.decrypt(&rotated_in_python, "rotated").unwrap(),
        PLAIN
    );
    let rotated_here = keyring.rotate(&old_token, "rotated").unwrap();
    let plain = py(
        "sys.stdout.buffer.write(Fernet(sys.argv[1].encode()).decrypt(sys.argv[2].encode()))",
        &[&new, &rotated_here],
    );
    assert_eq!(plain, PLAIN);

    // Without the key a token was made with, the error names the setting.
    let err = only_new
        .decrypt(&old_token, "connection x's password")
        .unwrap_err();
    assert!(err.to_string().contains(SETTING), "{err}");
}
