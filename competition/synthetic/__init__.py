"""The kit's synthetic competitions: stand-ins written in a preset's real
on-disk format, by `synth.kind`."""

# synth.kind -> the module (competition.synthetic.<name>) that writes it
STAND_INS = ("head_ct", "skin", "fundus", "mammography", "chest_xray", "cervical_ct",
             "aneurysm", "isic_2024", "lumbar_mri", "abdominal_ct")  # fmt: skip
