//! `equireg tasks`: the task presets (or a task file) as `restore` would run them: operator,
//! noise, DPS's step size, the other solvers' settings and the resolved EquiReg settings, as
//! text or JSON. Scripts read
//! the settings from here instead of keeping their own copy of the presets' defaults.

use clap::Args;
use equireg::task::{Task, preset_names};
use serde_json::{Value, json};

#[derive(Args)]
pub struct TasksArgs {
    /// One task: a preset name or a task .toml file (default: every shipped preset)
    task: Option<String>,
    /// Override a task field, as restore's --set (repeatable; needs TASK)
    #[arg(long = "set", value_name = "FIELD=VALUE", requires = "task")]
    set: Vec<String>,
    /// EquiReg settings on top of each task's [equireg] table, as restore's --equireg
    #[arg(long, value_name = "KEY=VALUE,...")]
    equireg: Option<String>,
    /// Sampling steps at which to report DPS's step size (zeta scales with them)
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub fn run(args: &TasksArgs) -> anyhow::Result<()> {
    if args.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    let tasks = match &args.task {
        Some(t) => vec![Task::load(t, &args.set)?],
        None => preset_names()
            .into_iter()
            .map(|n| Task::load(n, &[]))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let docs = tasks
        .iter()
        .map(|t| describe(t, args))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&docs)?);
        return Ok(());
    }
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    for d in &docs {
        println!("{}: {}", text(&d["name"]), text(&d["description"]));
        println!("    operator: {}", d["operator"]);
        println!("    noise: {}", d["noise"]);
        let dps = &d["dps"];
        println!(
            "    dps: zeta {} ({}): {} at {} steps",
            dps["zeta"],
            text(&dps["zeta_rule"]),
            dps["zeta_used"],
            dps["steps"]
        );
        let da = &d["solver"]["daps"];
        println!(
            "    daps: lr {}, langevin_steps {}, ode_steps {}, lr_min_ratio {}, tau {}, sigma {} to \
             {} (ODE to {})",
            da["lr"],
            da["langevin_steps"],
            da["ode_steps"],
            da["lr_min_ratio"],
            da["tau"],
            da["sigma_max"],
            da["sigma_min"],
            da["ode_sigma_min"]
        );
        let dn = &d["solver"]["ddnm"];
        println!(
            "    ddnm: eta {}, penalty_step {}",
            dn["eta"], dn["penalty_step"]
        );
        let dp = &d["solver"]["diffpir"];
        println!(
            "    diffpir: lambda {}, zeta {}, noise level {} ([-1, 1] units), data step {}",
            dp["lambda"],
            dp["zeta"],
            dp["noise_sigma"],
            text(&dp["data_step"])
        );
        let pg = &d["solver"]["pigdm"];
        println!("    pigdm: eta {}, weight {}", pg["eta"], pg["weight"]);
        let si = &d["solver"]["sitcom"];
        println!(
            "    sitcom: inner_steps {}, lr {}, noise_level {}, dc_scale {}, equireg_steps {}, \
             equireg_at {}",
            si["inner_steps"],
            si["lr"],
            si["noise_level"],
            si["dc_scale"],
            si["equireg_steps"],
            text(&si["equireg_at"])
        );
        let rd = &d["solver"]["red-diff"];
        println!(
            "    red-diff: lr {}, lambda {}, obs_weight {}",
            rd["lr"], rd["lambda"], rd["obs_weight"]
        );
        println!("    equireg: {}", text(&d["equireg"]));
    }
    Ok(())
}

/// One task as JSON; `equireg` is the settings string a restore run records in metrics.json.
fn describe(task: &Task, args: &TasksArgs) -> anyhow::Result<Value> {
    let config = task.equireg.config(args.equireg.as_deref().unwrap_or(""))?;
    config.check_steps(args.steps)?;
    let equireg = config.settings();
    Ok(json!({
        "name": task.name,
        "description": task.description,
        "operator": serde_json::to_value(&task.operator)?,
        "noise": serde_json::to_value(&task.noise)?,
        "dps": {
            "zeta": task.dps.zeta,
            "zeta_rule": task.dps.zeta_rule,
            "steps": args.steps,
            "zeta_used": task.dps.zeta_for(args.steps)?,
        },
        "solver": {
            "daps": serde_json::to_value(&task.solver.daps)?,
            "ddnm": serde_json::to_value(&task.solver.ddnm)?,
            "diffpir": {
                "lambda": task.solver.diffpir.lambda,
                "zeta": task.solver.diffpir.zeta,
                "noise_sigma": task.noise().std(),
                "data_step": task.solver.diffpir.data_step,
            },
            "pigdm": serde_json::to_value(&task.solver.pigdm)?,
            "sitcom": {
                "inner_steps": task.solver.sitcom.inner_steps,
                "lr": task.solver.sitcom.lr,
                "noise_level": task.solver.sitcom.noise_level.unwrap_or(task.noise().std()),
                "dc_scale": task.solver.sitcom.dc_scale,
                "equireg_steps": task.solver.sitcom.equireg_steps,
                "equireg_at": task.solver.sitcom.equireg_at,
            },
            "red-diff": serde_json::to_value(&task.solver.red_diff)?,
        },
        "equireg": equireg,
    }))
}
