"""What an installed wheel carries from the top of the repository: targets/, calibration/ and the
device runner, through symbolic links here that the build follows (a source checkout or an editable
install reads the originals). `edgekd.config.search_dirs` and `edgekd.bundle` look here last."""
