//! `equireg devices`: every adapter with backend, type, limits and features.

use clap::Args;
use equireg_gpu::caps::{WANTED_FEATURES, device_type_name};
use equireg_gpu::{GpuOptions, list_adapters};
use serde_json::json;

#[derive(Args)]
pub struct DevicesArgs {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub fn run(args: &DevicesArgs, opts: &GpuOptions) -> anyhow::Result<()> {
    let adapters = list_adapters(opts);
    if adapters.is_empty() {
        anyhow::bail!("no GPU adapter found; {}", equireg_gpu::INSTALL_HINT);
    }
    let mut all = Vec::new();
    for a in &adapters {
        let info = a.get_info();
        let l = a.limits();
        let f = a.features();
        let optional: Vec<String> = WANTED_FEATURES
            .iter()
            .map(|(name, w)| format!("{name}{}", if f.contains(*w) { "" } else { " (absent)" }))
            .collect();
        let limits = json!({
            "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
            "max_buffer_size": l.max_buffer_size,
            "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
            "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
            "max_compute_workgroup_size": [l.max_compute_workgroup_size_x, l.max_compute_workgroup_size_y, l.max_compute_workgroup_size_z],
            "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
            "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
            "max_immediate_size": l.max_immediate_size,
            "min_storage_buffer_offset_alignment": l.min_storage_buffer_offset_alignment,
        });
        all.push(json!({
            "name": info.name,
            "backend": info.backend.to_str(),
            "type": device_type_name(info.device_type),
            "driver": info.driver,
            "driver_info": info.driver_info,
            "subgroup_size": [info.subgroup_min_size, info.subgroup_max_size],
            "limits": limits,
            "optional_features": optional,
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for (i, a) in all.iter().enumerate() {
        println!(
            "[{i}] {} ({}, {}) driver: {} {}",
            a["name"].as_str().unwrap_or(""),
            a["backend"].as_str().unwrap_or(""),
            a["type"].as_str().unwrap_or(""),
            a["driver"].as_str().unwrap_or(""),
            a["driver_info"].as_str().unwrap_or("")
        );
        println!("    subgroup size: {}", a["subgroup_size"]);
        if let Some(l) = a["limits"].as_object() {
            for (k, v) in l {
                println!("    {k}: {v}");
            }
        }
        let feats: Vec<&str> = a["optional_features"]
            .as_array()
            .map(|v| v.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        println!("    optional features: {}", feats.join(", "));
    }
    Ok(())
}
