from unidad.jobs.sdp_data import fit_demo_vae
from unidad.runtime import job_log, set_threads

with job_log(snakemake):
    p = snakemake.params
    set_threads(snakemake.threads)
    fit = dict(p.fit)
    # the keys that choose the codec scenes go to the job; the rest are fit_tiny_vae's options
    data = {key: fit.pop(key) for key in ("n_images", "seed", "vivid_share", "pattern_weights") if key in fit}
    fit_demo_vae(p.backbone_params, snakemake.output[0], **data, fit_params=fit)
