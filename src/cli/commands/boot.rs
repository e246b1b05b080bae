//! `kiln boot`: one host's artifacts in a local VM, with its secrets and data disk.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln::diag;
use kiln::pipeline::{Compiled, Options};

use crate::cli::env::image_cache;
use crate::cli::ui::{io_error, usage_error};

/// The machine's shape: memory, and the disks attached besides its root.
pub(crate) struct Machine {
    pub(crate) memory: u32,
    pub(crate) data_disk: Option<PathBuf>,
    pub(crate) lab_images: Option<PathBuf>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn boot(
    c: &Compiled,
    path: &Path,
    opts: &Options,
    host: &str,
    image: Option<PathBuf>,
    keep: bool,
    secrets: Option<PathBuf>,
    timeout: u64,
    machine: Machine,
    json: bool,
) -> ExitCode {
    let Machine { memory, data_disk, lab_images } = machine;
    let Some(ha) = c.hosts.get(host) else {
        let hint =
            diag::did_you_mean(host, c.hosts.keys().map(String::as_str)).map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
        return io_error(&format!("no host `{host}` in system `{}`{hint}", c.system.name));
    };
    if data_disk.is_some() && !kiln::render::data_volume::has_volume(&c.system, &c.system.hosts[host]) {
        return usage_error(&format!(
            "host `{host}` has no data volume (it holds no data, or its provider has no volumes): nothing would use --data-disk"
        ));
    }
    let image_dir = image.unwrap_or_else(|| image_cache().join(&c.system.hosts[host].image.name));
    let mut values = std::collections::BTreeMap::new();
    let wanted = c.system.host_secrets(&c.system.hosts[host]);
    if let (None, Some(text)) = (&secrets, &opts.identity) {
        let ids = match kiln::sops::load_identities(text) {
            Ok(i) => i,
            Err(e) => return io_error(&format!("identity: {e}")),
        };
        let root = kiln::load::system_root(path).map(|(r, _)| r).unwrap_or_default();
        match kiln::secrets::values(&root, &c.system, &wanted, &ids) {
            Ok(v) => values = v,
            Err(e) => return io_error(&e),
        }
    }
    if let Some(dir) = secrets {
        for name in &wanted {
            match std::fs::read(dir.join(name)) {
                Ok(v) => {
                    values.insert(name.clone(), v);
                }
                Err(e) => return io_error(&format!("secret `{name}`: {}: {e}", dir.join(name).display())),
            }
        }
    }
    let Some(user_data) = kiln::boot::user_data(&c.system, host, ha) else { return io_error("the host has no user-data") };
    let opts = kiln::boot::BootOptions {
        image_dir,
        keep,
        memory_mb: memory,
        timeout: std::time::Duration::from_secs(timeout),
        kiln_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kiln")),
        secrets: values,
        data_disk,
        lab_images,
    };
    if !json {
        eprintln!("booting `{host}` (closure {}) under qemu; this takes a minute or two", &ha.closure[..16]);
        if ha.stage0 {
            eprintln!(
                "its user-data is the stage-0 loader: booting the full user-data of the same payload (the VM cannot reach the store)"
            );
        }
    }
    match kiln::boot::boot(host, &ha.closure, &user_data, &opts) {
        Err(e) => io_error(&e),
        Ok(r) => {
            let clean = r.datasource.as_deref().is_some_and(|d| d.starts_with("DataSourceNoCloud"))
                && r.warnings.is_empty()
                && r.result_errors.as_ref().is_none_or(|e| e.is_empty())
                && (keep || r.marker.as_deref() == Some(ha.closure.as_str()));
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("serialises"));
            } else {
                eprintln!("cloud-init finished after {:.0} s ({})", r.boot_seconds, r.datasource.as_deref().unwrap_or("no datasource"));
                for w in &r.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "ssh:   127.0.0.1:{}
http:  127.0.0.1:{}
https: 127.0.0.1:{}",
                    r.ports["ssh"], r.ports["http"], r.ports["https"]
                );
                if let Some(d) = &r.data_disk {
                    println!("data:  {}{}", d.display(), if r.data_disk_created { " (created, empty)" } else { "" });
                }
                if let Some(q) = &r.qmp {
                    println!("running (pid {}); power off: QMP system_powerdown on {}", r.pid.unwrap_or(0), q.display());
                }
            }
            if clean { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
    }
}
