plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.fractureedge.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.fractureedge.demo"
        minSdk = 24          // android.media.ExifInterface(InputStream)
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    kotlinOptions {
        jvmTarget = "17"
    }

    // The model is memory-mapped / read as-is: never compress it inside the APK.
    androidResources {
        noCompress += "tflite"
    }

    testOptions {
        unitTests.all { it.useJUnitPlatform() }
    }
}

dependencies {
    // LiteRT (formerly TensorFlow Lite); used only by FractureClassifier.kt.
    implementation("com.google.ai.edge.litert:litert:1.4.0")

    // JVM unit tests of the pure-Kotlin core (src/test): JUnit 5, and the real org.json,
    // because android.jar's org.json is a stub in local unit tests.
    testImplementation(platform("org.junit:junit-bom:5.10.2"))
    testImplementation("org.junit.jupiter:junit-jupiter")
    testRuntimeOnly("org.junit.platform:junit-platform-launcher")
    testImplementation("org.json:json:20240303")
}
