from unidad.jobs.sdp_data import fit_demo_vae
from unidad.runtime import job_log, set_threads

with job_log(snakemake):
    p = snakemake.params
    set_threads(snakemake.threads)
    fit = dict(p.fit)
    data = {key: fit.pop(key) for key in ("n_images", "seed", "vivid_share", "pattern_weights") if key in fit}  # the codec scenes
    fit_demo_vae(p.backbone_params, snakemake.output[0], **data, fit_params=fit)
