from unidad.jobs.sdp_data import fit_demo_vae
from unidad.runtime import job_log, set_threads

with job_log(snakemake):
    p = snakemake.params
    set_threads(snakemake.threads)
    fit = dict(p.fit)
    n_images, seed = int(fit.pop("n_images", 4000)), int(fit.pop("seed", 0))
    vivid_share = float(fit.pop("vivid_share", 0.0))
    fit_demo_vae(p.backbone_params, snakemake.output[0], n_images=n_images, seed=seed, vivid_share=vivid_share,
                 fit_params=fit)
