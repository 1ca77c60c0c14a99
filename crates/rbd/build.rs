//! With the cargo feature `ceph`: compile `cpp/objcopy.cc`, the C++ shim
//! around librados' `ObjectWriteOperation::copy_from` (absent from the C
//! API), and link it with librados, librbd and the C++ runtime. Without the
//! feature nothing is compiled and no C++ compiler is needed.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "ceph")]
    {
        println!("cargo:rerun-if-changed=cpp/objcopy.cc");
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .file("cpp/objcopy.cc")
            .warnings(true)
            .extra_warnings(true)
            .flag_if_supported("-fno-omit-frame-pointer")
            .compile("oxcopy_rbd_objcopy");
        // Order matters for static archives: the shim first, then what it uses.
        println!("cargo:rustc-link-lib=dylib=rados");
        println!("cargo:rustc-link-lib=dylib=rbd");
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
}
